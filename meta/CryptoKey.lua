---@meta
-- Godot's CryptoKey (docs/CryptoKey.md).

---@class tlspeer.CryptoKey
local CryptoKey = {}

---@return tlspeer.CryptoKey
function CryptoKey.new() end

---@param path string
---@param public_only? boolean
---@param password? string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function CryptoKey:load(path, public_only, password) end

---@param string_key string PEM or DER
---@param public_only? boolean
---@param password? string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function CryptoKey:load_from_string(string_key, public_only, password) end

---@param path string
---@param public_only? boolean
---@param password? string encrypts the private key (PKCS#8, PBES2)
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function CryptoKey:save(path, public_only, password) end

---@param public_only? boolean
---@param password? string
---@return string|nil pem
---@return string? message
---@return tlspeer.Error? code
function CryptoKey:save_to_string(public_only, password) end

---@return boolean
function CryptoKey:is_public_only() end

---@return "rsa"|"ec"|nil type
---@return string? message
---@return tlspeer.Error? code
function CryptoKey:get_type() end

---@return integer|nil bits
---@return string? message
---@return tlspeer.Error? code
function CryptoKey:get_bits() end
