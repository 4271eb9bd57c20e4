-- tlspeer: TLS and crypto for Lua, on mbedtls, with Godot 4's classes.
local core = require "tlspeer.core"

local M = {
  _VERSION = "tlspeer scm",
  mbedtls_version = core.mbedtls_version,
}

for _, name in ipairs { "Crypto", "CryptoKey", "X509Certificate",
                        "HashingContext", "HMACContext", "AESContext" } do
  M[name] = core[name]
end

return M
