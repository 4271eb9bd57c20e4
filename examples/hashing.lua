-- HashingContext, HMACContext and AESContext: a file's digest piece by
-- piece, an HMAC, and AES-CBC with its IV carried across updates.
--
--   lua5.4 examples/hashing.lua
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

-- Digests: data in pieces, as from a file read in chunks.
for _, name in ipairs { "HASH_MD5", "HASH_SHA1", "HASH_SHA256", "HASH_SHA512" } do
  local ctx = tls.HashingContext.new()
  assert(ctx:start(tls.HashingContext[name]))
  ctx:update("Hello, ")
  ctx:update("secure world!")
  print(name .. " " .. hex(ctx:finish()))
end

-- HMAC in pieces equals the one-shot Crypto:hmac_digest.
local mac = tls.HMACContext.new()
assert(mac:start(tls.HMACContext.HASH_SHA256, "key"))
mac:update("part one, ")
mac:update("part two")
local tag = mac:finish()
local once = tls.Crypto.new():hmac_digest(tls.HashingContext.HASH_SHA256, "key", "part one, part two")
print("HMAC-SHA256 " .. hex(tag) .. " (same as hmac_digest: " .. tostring(tag == once) .. ")")

-- AES-256-CBC: no padding in AESContext, so pad to 16 bytes (PKCS#7).
local function pad(s)
  local n = 16 - #s % 16
  return s .. string.rep(string.char(n), n)
end
local function unpad(s) return s:sub(1, #s - s:byte(-1)) end

local key = tls.Crypto.new():generate_random_bytes(32)
local iv = tls.Crypto.new():generate_random_bytes(16)
local plain = pad("level=7;gold=1234;sword=true")
local aes = tls.AESContext.new()
assert(aes:start(tls.AESContext.MODE_CBC_ENCRYPT, key, iv))
local first = aes:update(plain:sub(1, 16))           -- the IV carries over:
local rest = aes:update(plain:sub(17))               -- two updates = one
local state = aes:get_iv_state()
aes:finish()
print(("encrypted %d bytes; IV state is the last block: %s"):format(#first + #rest,
  tostring(state == rest:sub(-16))))
assert(aes:start(tls.AESContext.MODE_CBC_DECRYPT, key, iv))
print("decrypted: " .. unpad(aes:update(first .. rest)))
aes:finish()
