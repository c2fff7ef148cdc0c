-- Argo CD health check shared by LinkedAccount, BulkRegistration and MemberAccount.
-- Argo CD evaluates it with gopher-lua (Lua 5.1); `obj` is the live object.
-- Progressing: no status yet, status.observedGeneration behind metadata.generation, or
--   Reconciling=True. Degraded: Stalled=True. Healthy: Ready=True for the current generation.
local hs = { status = "Progressing", message = "Waiting for the operator to report status" }

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.status == nil then
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "The operator has not yet observed generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or stalled.reason or "Stalled"
  return hs
end

local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = reconciling.message or reconciling.reason or "Reconciling"
  return hs
end

local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  local readyGen = ready.observedGeneration
  if readyGen == nil or generation == nil or readyGen >= generation then
    hs.status = "Healthy"
    hs.message = ready.message or "Ready"
    return hs
  end
end

if ready ~= nil then
  hs.message = ready.message or ready.reason or hs.message
end
return hs
