---@meta
-- Godot's TLSOptions (docs/TLSOptions.md): only from its three constructors.

---The `opts` of TLSOptions.client and client_unsafe.
---@class tlspeer.ClientOptions
---@field certificate? tlspeer.X509Certificate a client certificate (mutual TLS)
---@field key? tlspeer.CryptoKey its private key
---@field alpn? string[]
---@field min_version? "1.2"|"1.3"
---@field ciphersuites? string[] IANA names
---@field session_tickets? boolean

---The `opts` of TLSOptions.server.
---@class tlspeer.ServerOptions
---@field trusted_chain? tlspeer.X509Certificate the CA(s) that sign client certificates
---@field verify? "none"|"optional"|"required"
---@field alpn? string[]
---@field min_version? "1.2"|"1.3"
---@field ciphersuites? string[]
---@field session_tickets? boolean

---@class tlspeer.TLSOptions
local TLSOptions = {}

---A client that verifies the server (against the default CA bundle when trusted_chain is nil).
---@param trusted_chain? tlspeer.X509Certificate
---@param common_name_override? string
---@param opts? tlspeer.ClientOptions
---@return tlspeer.TLSOptions|nil options
---@return string? message
---@return tlspeer.Error? code
function TLSOptions.client(trusted_chain, common_name_override, opts) end

---A client that does not verify the server: development only.
---@param trusted_chain? tlspeer.X509Certificate
---@param opts? tlspeer.ClientOptions
---@return tlspeer.TLSOptions|nil options
---@return string? message
---@return tlspeer.Error? code
function TLSOptions.client_unsafe(trusted_chain, opts) end

---A server presenting `certificate` (a chain is sent whole) with its private `key`.
---@param key tlspeer.CryptoKey
---@param certificate tlspeer.X509Certificate
---@param opts? tlspeer.ServerOptions
---@return tlspeer.TLSOptions|nil options
---@return string? message
---@return tlspeer.Error? code
function TLSOptions.server(key, certificate, opts) end

---@return boolean
function TLSOptions:is_server() end

---@return boolean
function TLSOptions:is_unsafe_client() end

---@return string
function TLSOptions:get_common_name_override() end

---@return tlspeer.X509Certificate?
function TLSOptions:get_trusted_ca_chain() end

---@return tlspeer.CryptoKey?
function TLSOptions:get_private_key() end

---@return tlspeer.X509Certificate?
function TLSOptions:get_own_certificate() end
