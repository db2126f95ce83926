-- Argo CD health check for kubeforge.io/ModelServer (kubeforge charts/kubeforge/argocd).
-- Reads status.phase, status.observedGeneration and the Ready condition the operator writes.
local hs = {}
local st = obj.status
local gen = obj.metadata.generation
if st == nil or st.observedGeneration == nil or (gen ~= nil and st.observedGeneration < gen) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end
local ready = nil
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type == "Ready" then ready = c end
  end
end
local why = ""
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then why = ": " .. ready.message end
if ready ~= nil and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = "Invalid spec" .. why
  return hs
end
local phase = st.phase or "Pending"
if phase == "Ready" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = "Serving" .. why
elseif phase == "Held" then
  hs.status = "Suspended"
  hs.message = "Canary held for a decision" .. why
elseif phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = phase .. why
else
  hs.status = "Progressing"
  hs.message = phase .. why
end
return hs
