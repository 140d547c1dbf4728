-- Argo CD health of a sluice.dev WorkflowRun: Progressing while Pending,
-- Queued or Running; Healthy when Succeeded; Degraded when Failed or
-- Cancelled (with the reason and the first failing node).
local hs = {status = "Progressing", message = "waiting for the operator to admit the run"}
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local phase = obj.status.phase
local detail = obj.status.message or obj.status.reason or ""
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "succeeded"
elseif phase == "Failed" or phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = string.lower(phase)
  if obj.status.firstFailedNode ~= nil then
    hs.message = hs.message .. " at node " .. obj.status.firstFailedNode
  end
  if detail ~= "" then
    hs.message = hs.message .. ": " .. detail
  end
else
  hs.message = string.lower(phase)
  if obj.status.progress ~= nil then
    hs.message = hs.message .. " (" .. obj.status.progress .. " nodes)"
  end
end
return hs
