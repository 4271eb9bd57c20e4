-- Crypto: random bytes, keys, signatures, RSA encryption, HMAC and a
-- constant-time comparison, each printed.
--
--   lua5.4 examples/crypto.lua
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
local HASH_SHA256 = tls.HashingContext.HASH_SHA256

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

local crypto = tls.Crypto.new()
print(tls.Crypto)                                   -- what the class has

print("random: " .. hex(crypto:generate_random_bytes(16)))

-- Keys: EC is quick to make; RSA too can encrypt.
local ec = assert(crypto:generate_ec("P-256"))
local rsa = assert(crypto:generate_rsa(2048))
print("keys: " .. tostring(ec) .. ", " .. tostring(rsa))

-- Sign a digest, verify it with the public half only.
local ctx = tls.HashingContext.new()
ctx:start(HASH_SHA256)
ctx:update("a save game")
local digest = ctx:finish()
local signature = assert(crypto:sign(HASH_SHA256, digest, ec))
local public = tls.CryptoKey.new()
assert(public:load_from_string(ec:save_to_string(true), true))
print("signature verifies: " .. tostring(crypto:verify(HASH_SHA256, digest, signature, public)))
print("tampered verifies: " .. tostring(crypto:verify(HASH_SHA256, digest:reverse(), signature, public)))

-- RSA encryption of a short secret (PKCS#1 v1.5, as Godot).
local secret = "session key 1234"
local sealed = assert(crypto:encrypt(rsa, secret))
print(("encrypted %d bytes into %d; decrypted: %s"):format(#secret, #sealed,
  assert(crypto:decrypt(rsa, sealed))))

-- HMAC, and comparing MACs without leaking where they differ.
local mac = crypto:hmac_digest(HASH_SHA256, "shared key", "score=1000")
print("hmac: " .. hex(mac))
print("macs equal: " .. tostring(crypto:constant_time_compare(mac,
  crypto:hmac_digest(HASH_SHA256, "shared key", "score=1000"))))

-- A runtime failure returns nil, message, code.
print("EC encrypt: " .. table.concat({ select(2, crypto:encrypt(ec, "x")) }, " / "))
