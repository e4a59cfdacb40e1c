-- Argo CD health of cleanroom.io Scenario and Authorization (the same script
-- serves both; see argocd-cm.yaml for where it goes).
-- Healthy: the operator has seen this generation and Ready is True.
-- Progressing: not yet seen, or Ready is False while work goes on.
-- Suspended: suspended (by the object or its authorization).
-- Degraded: Rejected, Revoked or Expired: the operator will not make it Ready.
-- A Closed scenario has been torn down on purpose: Healthy, its work is done.
local hs = {}
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "the operator has not yet seen generation " .. tostring(generation)
  return hs
end
local ready = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
local phase = obj.status.phase or ""
local message = phase
if ready ~= nil and ready.message ~= nil then
  message = phase .. ": " .. ready.message
end
hs.message = message
if phase == "Rejected" or phase == "Revoked" or phase == "Expired" then
  hs.status = "Degraded"
elseif phase == "Suspended" then
  hs.status = "Suspended"
elseif phase == "Closed" then
  hs.status = "Healthy"
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
return hs
