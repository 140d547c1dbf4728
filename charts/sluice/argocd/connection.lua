-- Argo CD health of a sluice.dev Connection: Healthy when Ready (and, if
-- spec.verify is set, Verified); Degraded when not Ready (a missing Secret
-- or key, named in the message) or when its probe failed.
local hs = {status = "Progressing", message = "waiting for the operator to check the connection"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "waiting for the operator to observe generation " .. generation
  return hs
end
local ready, verified
for _, condition in ipairs(obj.status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Verified" then
    verified = condition
  end
end
if ready == nil then
  return hs
end
if ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = ready.message
elseif verified ~= nil and verified.status == "False" then
  hs.status = "Degraded"
  hs.message = verified.message
else
  hs.status = "Healthy"
  hs.message = ready.message
end
return hs
