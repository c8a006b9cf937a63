-- Argo CD health check for mtls.dev/MtlsCertificate (Lua, run by Argo CD
-- with the object as `obj`). Reads what the operator writes, as kstatus does:
--   Healthy      Ready=True for the current generation: the Secret is issued.
--   Degraded     Stalled=True (InvalidSpec, PolicyDenied, CAInvalid,
--                SecretConflict: a person must fix the spec, a policy, the CA
--                or the Secret), or Expired.
--   Progressing  anything else: not seen yet, a newer generation not yet
--                processed, or a failure the operator retries by itself
--                (CANotFound until the CA Secret exists, IssuanceFailed).
-- Install it as resource.customizations.health.mtls.dev_MtlsCertificate in
-- argocd-cm (argocd-cm.yaml next to this file holds the same text).
local hs = {}
local generation = obj.metadata.generation
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to issue the certificate"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to process generation " .. generation
  return hs
end
local ready = nil
local stalled = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  end
end
local function describe(condition)
  return (condition.reason or "") .. ": " .. (condition.message or "")
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if ready.reason == "Expired" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
