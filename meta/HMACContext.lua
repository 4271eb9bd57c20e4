---@meta
-- Godot's HMACContext (docs/HMACContext.md).

---@class tlspeer.HMACContext
local HMACContext = {}

HMACContext.HASH_MD5 = 0
HMACContext.HASH_SHA1 = 1
HMACContext.HASH_SHA256 = 2
HMACContext.HASH_SHA512 = 3

---@return tlspeer.HMACContext
function HMACContext.new() end

---@param hash_type integer a HASH_* value
---@param key string
---@return true
function HMACContext:start(hash_type, key) end

---@param data string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function HMACContext:update(data) end

---@return string|nil hmac raw bytes
---@return string? message
---@return tlspeer.Error? code
function HMACContext:finish() end
