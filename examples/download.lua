-- Downloads a URL to a file with tls.request, streaming: the body goes
-- to FILE.part chunk by chunk and is renamed to FILE once whole.  Prints
-- the size and the SHA-256 of what arrived.
--
--   lua5.4 examples/download.lua URL FILE [ca.crt]
--
-- Without ca.crt https servers are checked against the default CA bundle
-- (the system's, or SSL_CERT_FILE / SSL_CERT_DIR when set).
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")    -- progress shows at once, also in a pipe

local url, file, ca = arg[1], arg[2], arg[3]
if not url or not file then
  io.stderr:write("usage: lua5.4 examples/download.lua URL FILE [ca.crt]\n")
  os.exit(2, true)
end

local tls_options
if ca then
  local cert = tls.X509Certificate.new()
  local ok, msg = cert:load(ca)
  if not ok then io.stderr:write(msg, "\n"); os.exit(1, true) end
  tls_options = tls.TLSOptions.client(cert)
end

local size, code_or_msg, headers_or_code = tls.request(url, {
  output = file, tls_options = tls_options, timeout = 300,
})
if not size then
  io.stderr:write("download failed: ", code_or_msg, " (", headers_or_code, ")\n")
  os.exit(1, true)
end
if code_or_msg ~= 200 then
  io.stderr:write(("warning: HTTP status %d\n"):format(code_or_msg))
end

-- The digest, reading the file back in pieces.
local f = assert(io.open(file, "rb"))
local ctx = tls.HashingContext.new()
ctx:start(tls.HashingContext.HASH_SHA256)
while true do
  local piece = f:read(65536)
  if not piece then break end
  ctx:update(piece)
end
f:close()
local digest = ctx:finish():gsub(".", function(c) return ("%02x"):format(c:byte()) end)

print(("%s: %d bytes, HTTP %d"):format(file, size, code_or_msg))
print("sha256 " .. digest)
