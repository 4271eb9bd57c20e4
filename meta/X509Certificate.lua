---@meta
-- Godot's X509Certificate (docs/X509Certificate.md).

---@class tlspeer.X509Certificate
local X509Certificate = {}

---@return tlspeer.X509Certificate
function X509Certificate.new() end

---@param path string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:load(path) end

---@param string string PEM (a chain too) or DER
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:load_from_string(string) end

---@param path string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:save(path) end

---@return string|nil pem
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:save_to_string() end

---@return string|nil subject
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:get_subject() end

---@return string|nil issuer
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:get_issuer() end

---@return string|nil serial lowercase hex
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:get_serial() end

---@return string|nil time "YYYYMMDDhhmmss" UTC
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:get_not_before() end

---@return string|nil time "YYYYMMDDhhmmss" UTC
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:get_not_after() end

---@return string[]|nil names
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:get_san() end

---@return boolean|nil
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:is_ca() end

---@param hash? "sha256"|"sha1"|"sha512"|"md5"
---@return string|nil fingerprint lowercase hex
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:get_fingerprint(hash) end

---@return tlspeer.CryptoKey|nil key
---@return string? message
---@return tlspeer.Error? code
function X509Certificate:get_public_key() end

---@return integer
function X509Certificate:get_chain_length() end
