---@meta
-- Godot's Crypto (docs/Crypto.md).

---The `opts` of generate_self_signed_certificate and issue_certificate.
---@class tlspeer.CertificateOptions
---@field san? string[] extra DNS names and IP literals
---@field ca? boolean a CA certificate
---@field client? boolean a client-authentication certificate (issue_certificate)

---@class tlspeer.Crypto
local Crypto = {}

---@return tlspeer.Crypto
function Crypto.new() end

---@param size integer 0..2^30
---@return string bytes
function Crypto:generate_random_bytes(size) end

---@param bits integer 1024..8192
---@return tlspeer.CryptoKey|nil key
---@return string? message
---@return tlspeer.Error? code
function Crypto:generate_rsa(bits) end

---@param curve? "secp256r1"|"secp384r1"|"secp521r1"|"P-256"|"P-384"|"P-521"|"prime256v1"
---@return tlspeer.CryptoKey|nil key
---@return string? message
---@return tlspeer.Error? code
function Crypto:generate_ec(curve) end

---@param key tlspeer.CryptoKey
---@param issuer_name? string "CN=myserver,O=myorganisation,C=IT"
---@param not_before? string "20140101000000" (UTC)
---@param not_after? string "20340101000000" (UTC)
---@param opts? tlspeer.CertificateOptions
---@return tlspeer.X509Certificate|nil certificate
---@return string? message
---@return tlspeer.Error? code
function Crypto:generate_self_signed_certificate(key, issuer_name, not_before, not_after, opts) end

---@param subject_key tlspeer.CryptoKey
---@param subject_name string
---@param issuer_key tlspeer.CryptoKey
---@param issuer_cert tlspeer.X509Certificate
---@param not_before string
---@param not_after string
---@param opts? tlspeer.CertificateOptions
---@return tlspeer.X509Certificate|nil certificate
---@return string? message
---@return tlspeer.Error? code
function Crypto:issue_certificate(subject_key, subject_name, issuer_key, issuer_cert, not_before, not_after, opts) end

---@param hash_type integer a HashingContext.HASH_* value
---@param hash string a raw digest
---@param key tlspeer.CryptoKey a private key
---@return string|nil signature
---@return string? message
---@return tlspeer.Error? code
function Crypto:sign(hash_type, hash, key) end

---@param hash_type integer
---@param hash string
---@param signature string
---@param key tlspeer.CryptoKey
---@return boolean
function Crypto:verify(hash_type, hash, signature, key) end

---RSA PKCS#1 v1.5.
---@param key tlspeer.CryptoKey
---@param plaintext string
---@return string|nil ciphertext
---@return string? message
---@return tlspeer.Error? code
function Crypto:encrypt(key, plaintext) end

---@param key tlspeer.CryptoKey
---@param ciphertext string
---@return string|nil plaintext
---@return string? message
---@return tlspeer.Error? code
function Crypto:decrypt(key, ciphertext) end

---@param hash_type integer
---@param key string
---@param msg string
---@return string digest
function Crypto:hmac_digest(hash_type, key, msg) end

---@param trusted string
---@param received string
---@return boolean
function Crypto:constant_time_compare(trusted, received) end
