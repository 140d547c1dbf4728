-- Argo CD health of a sluice.dev Schedule: Degraded when its cron, time
-- zone or catch-up is invalid or when it paused itself after a failed run
-- (pauseOnFailure); Suspended when spec.suspend is set; Healthy when Ready.
local hs = {status = "Progressing", message = "waiting for the operator to schedule it"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "waiting for the operator to observe generation " .. generation
  return hs
end
local ready, valid, paused
for _, condition in ipairs(obj.status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Valid" then
    valid = condition
  elseif condition.type == "Paused" then
    paused = condition
  end
end
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = valid.message
elseif paused ~= nil and paused.status == "True" then
  hs.status = "Degraded"
  hs.message = "paused after a failed run: " .. (paused.message or "")
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
