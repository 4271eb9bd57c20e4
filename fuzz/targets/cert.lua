-- fuzz target cert: X509Certificate:load_from_string (PEM and DER) and,
-- when it loads, every getter.
local tls = require "tlspeer"
local T = {}
function T.init() end
local function str(what, v)
  if type(v) ~= "string" then error(what .. " returned " .. tostring(v), 2) end
end
function T.run(data)
  local cert = tls.X509Certificate.new()
  local ok = fuzz_result("load_from_string", cert:load_from_string(data))
  tostring(cert)
  if not ok then return end
  str("get_subject", cert:get_subject())
  str("get_issuer", cert:get_issuer())
  str("get_serial", cert:get_serial())
  str("get_not_before", cert:get_not_before())
  str("get_not_after", cert:get_not_after())
  local san = cert:get_san()
  assert(type(san) == "table", "get_san")
  for _, v in ipairs(san) do str("get_san entry", v) end
  cert:is_ca()
  assert(math.type(cert:get_chain_length()) == "integer", "get_chain_length")
  for _, h in ipairs { "md5", "sha1", "sha256", "sha512" } do
    fuzz_result("get_fingerprint", cert:get_fingerprint(h))
  end
  local key = fuzz_result("get_public_key", cert:get_public_key())
  if key then
    tostring(key)
    fuzz_result("key save_to_string", key:save_to_string(true))
  end
  local pem = fuzz_result("save_to_string", cert:save_to_string())
  if pem then
    local again = tls.X509Certificate.new()
    fuzz_result("reload", again:load_from_string(pem))
  end
end
return T
