---@meta tlspeer
-- LuaLS / LuaCATS definitions of tlspeer: `local tls = require "tlspeer"`.
-- The reference is docs/README.md; these files give editors completion and
-- type checks (add this folder to "Lua.workspace.library").

---The name of Godot's Error constant that a failure returns as its third value.
---@alias tlspeer.Error
---| "FAILED"
---| "ERR_UNAVAILABLE"
---| "ERR_UNCONFIGURED"
---| "ERR_INVALID_PARAMETER"
---| "ERR_INVALID_DATA"
---| "ERR_FILE_NOT_FOUND"
---| "ERR_FILE_CANT_OPEN"
---| "ERR_FILE_CANT_WRITE"
---| "ERR_FILE_CORRUPT"
---| "ERR_FILE_EOF"
---| "ERR_ALREADY_IN_USE"
---| "ERR_BUSY"
---| "ERR_TIMEOUT"
---| "ERR_CANT_CONNECT"
---| "ERR_CANT_RESOLVE"
---| "ERR_CONNECTION_ERROR"
---| "ERR_UNAUTHORIZED"

---Options of `tls.listen` (docs/helpers.md).
---@class tlspeer.ListenOptions
---@field port? integer 0 (the default) picks a free port
---@field bind? string "*" (dual-stack, the default), "127.0.0.1", "::1"...
---@field certificate string|tlspeer.X509Certificate a path or a loaded certificate (chain)
---@field key string|tlspeer.CryptoKey a path or a loaded private key
---@field key_password? string the password of an encrypted key file
---@field trusted? string|tlspeer.X509Certificate the CA that signs client certificates
---@field verify? "none"|"optional"|"required" client certificates
---@field alpn? string[] ALPN protocols, in order of preference
---@field min_version? "1.2"|"1.3"
---@field ciphersuites? string[] IANA names
---@field session_tickets? boolean false turns session tickets off
---@field handshake_timeout? number seconds a client has to finish its handshake (10)

---Options of `tls.connect` (docs/helpers.md).
---@class tlspeer.ConnectOptions
---@field host string a host name or an IP address
---@field port integer
---@field timeout? number seconds for the connect and the handshake (10)
---@field trusted? string|tlspeer.X509Certificate a CA or certificate to trust (default: the CA bundle)
---@field unsafe? boolean no verification: development only
---@field certificate? string|tlspeer.X509Certificate a client certificate (mutual TLS)
---@field key? string|tlspeer.CryptoKey its private key
---@field key_password? string the password of an encrypted key file
---@field common_name? string the name to verify, when it is not host
---@field alpn? string[]
---@field min_version? "1.2"|"1.3"
---@field ciphersuites? string[]

---Options of `tls.request` (docs/module.md).
---@class tlspeer.RequestOptions
---@field method? string|integer "GET", "POST"... or an HTTPClient.METHOD_* value
---@field headers? string[]|table<string, string|number> "Name: value" lines, or a map
---@field body? string
---@field tls_options? tlspeer.TLSOptions client options (a custom CA, or client_unsafe())
---@field timeout? number seconds for the whole request (30)
---@field max_redirects? integer 8; 0 returns a 3xx itself
---@field output? string|file* a path (written to path.part, renamed when whole) or an open file
---@field sink? fun(chunk: string) called with each chunk of the body
---@field keep_error_body? boolean write a non-2xx body to output/sink all the same
---@field chunk_size? integer the most bytes read at once (65536)

---Options of `tls.ws_listen` (docs/websocket-helpers.md): those of tls.listen, TLS ones optional.
---@class tlspeer.WsListenOptions
---@field port? integer 0 (the default) picks a free port
---@field bind? string "*" (dual-stack, the default), "127.0.0.1", "::1"...
---@field certificate? string|tlspeer.X509Certificate with key: wss://
---@field key? string|tlspeer.CryptoKey
---@field key_password? string
---@field trusted? string|tlspeer.X509Certificate the CA that signs client certificates
---@field verify? "none"|"optional"|"required" client certificates
---@field min_version? "1.2"|"1.3"
---@field ciphersuites? string[]
---@field handshake_timeout? number seconds a client has for TLS and the upgrade (10)
---@field protocols? string[] subprotocols, in order of preference
---@field handshake_headers? string[] extra "Name: value" lines of the 101 response
---@field compression? boolean permessage-deflate (false)
---@field inbound_buffer_size? integer 65535
---@field outbound_buffer_size? integer 65535
---@field max_queued_packets? integer 4096
---@field heartbeat_interval? number seconds between pings (0: none)

---Options of `tls.ws_connect` (docs/websocket-helpers.md).
---@class tlspeer.WsConnectOptions
---@field url string ws://host[:port]/path or wss://...
---@field trusted? string|tlspeer.X509Certificate a CA or certificate to trust (default: the CA bundle)
---@field unsafe? boolean no verification: development only
---@field certificate? string|tlspeer.X509Certificate a client certificate
---@field key? string|tlspeer.CryptoKey
---@field key_password? string
---@field common_name? string the name to verify, when it is not the URL's host
---@field min_version? "1.2"|"1.3"
---@field ciphersuites? string[]
---@field timeout? number seconds for connect, TLS and the upgrade (10)
---@field protocols? string[]
---@field handshake_headers? string[] extra "Name: value" lines of the upgrade request
---@field compression? boolean permessage-deflate (false)
---@field inbound_buffer_size? integer
---@field outbound_buffer_size? integer
---@field max_queued_packets? integer
---@field heartbeat_interval? number

---The response headers of tls.request: names as sent, lookups ignore case.
---@alias tlspeer.Headers table<string, string>

---@class tlspeer
---@field _VERSION string "tlspeer scm"
---@field mbedtls_version string the mbedtls version in use
---@field Crypto tlspeer.Crypto
---@field CryptoKey tlspeer.CryptoKey
---@field X509Certificate tlspeer.X509Certificate
---@field TLSOptions tlspeer.TLSOptions
---@field StreamPeerTCP tlspeer.StreamPeerTCP
---@field TCPServer tlspeer.TCPServer
---@field StreamPeerTLS tlspeer.StreamPeerTLS
---@field HTTPClient tlspeer.HTTPClient
---@field HTTPRequest tlspeer.HTTPRequest
---@field WebSocketPeer tlspeer.WebSocketPeer
---@field HashingContext tlspeer.HashingContext
---@field HMACContext tlspeer.HMACContext
---@field AESContext tlspeer.AESContext
local tls = {}

---A TLS server: listens, accepts, handshakes, reads; events for what happens.
---@param opts tlspeer.ListenOptions
---@return tlspeer.Server? server
---@return string? message
---@return tlspeer.Error? code
function tls.listen(opts) end

---A TLS client; returns at once, the outcome comes as an event or from wait().
---@param opts tlspeer.ConnectOptions
---@return tlspeer.Client client
function tls.connect(opts) end

---One blocking HTTP(S) request: body, code, headers (with output/sink: the byte count first),
---or nil, message, code (a Godot error name; with output/sink and a non-2xx status: the status).
---@param url string
---@param opts? tlspeer.RequestOptions
---@return string|integer|nil body the body, or the byte count with output/sink
---@return integer|string code the HTTP status, or the failure's message
---@return tlspeer.Headers|tlspeer.Error|integer|nil headers the headers, or the failure's code
---@return tlspeer.Headers? error_headers the headers of a non-2xx response kept out of output/sink
function tls.request(url, opts) end

---A WebSocket server (ws://, or wss:// with certificate and key), stepped by tls.poll()
---(docs/websocket-helpers.md).
---@param opts tlspeer.WsListenOptions
---@return tlspeer.WebSocketServer? server
---@return string? message
---@return tlspeer.Error? code
function tls.ws_listen(opts) end

---A WebSocket client; returns at once, the outcome comes as an event or from wait().
---@param opts tlspeer.WsConnectOptions
---@return tlspeer.WebSocketConnection connection
function tls.ws_connect(opts) end

---Two connected in-memory stream ends.
---@return tlspeer.PipeEnd a
---@return tlspeer.PipeEnd b
function tls.pipe() end

---One short, non-blocking step of every live helper object: call it once per frame.
---@param budget? number seconds of work at most (tls.get_poll_budget())
---@return boolean idle true when no work was left over
function tls.poll(budget) end

---Steps every helper object, sleeping between events, for `timeout` seconds (nil: for good).
---@param timeout? number
---@return true
function tls.run(timeout) end

---@param seconds number how long one poll works at most (0.0003)
---@param bytes? integer bytes one connection reads or writes per step (16384, at least 1024)
function tls.set_poll_budget(seconds, bytes) end

---@return number seconds
---@return integer bytes
function tls.get_poll_budget() end

---Seconds on a monotonic clock (only differences mean anything).
---@return number
function tls.now() end

---Blocks the calling thread; nothing is polled meanwhile.
---@param seconds number 0 or more
function tls.sleep(seconds) end

---The handshake pool's size (1..64); 0 runs everything inline.
---@param n integer
function tls.set_worker_threads(n) end

---@return integer
function tls.get_worker_threads() end

---Uses the PEM bundle at `path` as the default CA bundle (nil: the default order).
---@param path string?
function tls.set_certificate_bundle_override(path) end

---The same override from PEM text in memory (nil removes it).
---@param pem string?
function tls.set_certificate_bundle_override_pem(pem) end

---@return string? path
function tls.get_certificate_bundle_override() end

---Which source the default CA bundle came from.
---@return string
function tls.get_certificate_bundle_source() end

---Starts loading the default CA bundle; true when it is loaded (wait = true: blocks until then).
---@param wait? boolean
---@return boolean loaded
function tls.preload_certificate_bundle(wait) end

---The operating system's CA certificates, as PEM.
---@return string
function tls.get_system_ca_certificates() end

return tls
