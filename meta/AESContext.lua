---@meta
-- Godot's AESContext (docs/AESContext.md).

---@class tlspeer.AESContext
local AESContext = {}

AESContext.MODE_ECB_ENCRYPT = 0
AESContext.MODE_ECB_DECRYPT = 1
AESContext.MODE_CBC_ENCRYPT = 2
AESContext.MODE_CBC_DECRYPT = 3

---@return tlspeer.AESContext
function AESContext.new() end

---@param mode integer a MODE_* value
---@param key string 16 or 32 bytes
---@param iv? string 16 bytes for CBC
---@return true
function AESContext:start(mode, key, iv) end

---@param src string a multiple of 16 bytes
---@return string|nil result
---@return string? message
---@return tlspeer.Error? code
function AESContext:update(src) end

---@return string iv
function AESContext:get_iv_state() end

---@return true
function AESContext:finish() end
