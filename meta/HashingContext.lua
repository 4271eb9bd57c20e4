---@meta
-- Godot's HashingContext (docs/HashingContext.md).

---@class tlspeer.HashingContext
local HashingContext = {}

HashingContext.HASH_MD5 = 0
HashingContext.HASH_SHA1 = 1
HashingContext.HASH_SHA256 = 2
HashingContext.HASH_SHA512 = 3

---@return tlspeer.HashingContext
function HashingContext.new() end

---@param type integer a HASH_* value
---@return true
function HashingContext:start(type) end

---@param chunk string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function HashingContext:update(chunk) end

---@return string|nil digest raw bytes
---@return string? message
---@return tlspeer.Error? code
function HashingContext:finish() end
