-- Argo CD health of a sluice.dev Workflow: Healthy when Ready, Degraded
-- when the spec is invalid (the Valid condition's message says where),
-- Suspended when spec.suspend is set, Progressing otherwise.
local hs = {status = "Progressing", message = "waiting for the operator to validate the workflow"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "waiting for the operator to observe generation " .. generation
  return hs
end
local ready, valid
for _, condition in ipairs(obj.status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Valid" then
    valid = condition
  end
end
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = valid.message
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
elseif ready ~= nil and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = ready.message
elseif ready ~= nil then
  hs.message = ready.message
end
return hs
