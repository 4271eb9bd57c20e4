-- fuzz target key: CryptoKey:load_from_string, PEM and DER, private or
-- public_only, with and without a password.  Input: one mode byte (bit 0
-- public_only, bit 1 a password up to the first NUL follows), then the key.
local tls = require "tlspeer"
local T = {}
function T.init() end
function T.run(data)
  local mode = data:byte(1) or 0
  local body = data:sub(2)
  local pw
  if mode & 2 ~= 0 then
    local i = body:find("\0", 1, true)
    if i then pw, body = body:sub(1, i - 1), body:sub(i + 1) else pw = "" end
  end
  local key = tls.CryptoKey.new()
  local ok = fuzz_result("load_from_string",
    key:load_from_string(body, mode & 1 ~= 0, pw))
  tostring(key)
  if not ok then return end
  assert(key:get_type() == "rsa" or key:get_type() == "ec", "get_type")
  assert(math.type(key:get_bits()) == "integer", "get_bits")
  local pub = fuzz_result("save_to_string(true)", key:save_to_string(true))
  if not key:is_public_only() then
    local pem = fuzz_result("save_to_string", key:save_to_string())
    if pem then
      local again = tls.CryptoKey.new()
      fuzz_result("reload", again:load_from_string(pem))
    end
  end
  if pub then
    local again = tls.CryptoKey.new()
    fuzz_result("reload public", again:load_from_string(pub, true))
  end
end
return T
