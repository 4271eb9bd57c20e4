-- fuzz/targets/common.lua: helpers for every target (run by the harness
-- before the target's own file).

-- A tlspeer call that fails must say so with nil, message, code.  Anything
-- else (a raised error is caught by the harness) is a bug: raise.
function fuzz_result(what, ok, msg, code)
  if ok == nil or ok == false then
    if type(msg) ~= "string" or type(code) ~= "string" then
      error(("%s failed without a message and code: %s, %s, %s")
        :format(what, tostring(ok), tostring(msg), tostring(code)), 2)
    end
    return nil
  end
  return ok
end

-- The PKI of the TLS targets, made with tlspeer from the harness's
-- deterministic RNG, so every run (and the recorded seeds) sees the same
-- keys and certificates.
function fuzz_pki()
  local tls = require "tlspeer"
  local crypto = tls.Crypto.new()
  local from, to = "20200101000000", "20991231000000"
  local ca_key = assert(crypto:generate_ec("secp256r1"))
  local ca = assert(crypto:generate_self_signed_certificate(ca_key,
    "CN=tlspeer fuzz CA", from, to, { ca = true }))
  local server_key = assert(crypto:generate_ec("secp256r1"))
  local server = assert(crypto:issue_certificate(server_key, "CN=localhost",
    ca_key, ca, from, to, { san = { "localhost" } }))
  local client_key = assert(crypto:generate_ec("secp256r1"))
  local client = assert(crypto:issue_certificate(client_key, "CN=fuzz client",
    ca_key, ca, from, to, { client = true }))
  return { ca = ca, server_key = server_key, server = server,
           client_key = client_key, client = client }
end

-- A transport serving `data` as the peer's bytes, chunked as its first
-- byte says: low 7 bits = most bytes per read (0: as many as asked), high
-- bit = a would-block "" between reads.  Writes are discarded.
function fuzz_transport(data)
  local first = data:byte(1) or 0
  local chunk, stall = first & 0x7f, first & 0x80 ~= 0
  local t = { pos = 2, reads = 0, written = 0 }
  function t:get_partial_data(n)
    self.reads = self.reads + 1
    if stall and self.reads % 2 == 0 then return "" end
    if self.pos > #data then
      return nil, "end of the fuzz input", "ERR_FILE_EOF"
    end
    if chunk > 0 and n > chunk then n = chunk end
    local s = data:sub(self.pos, self.pos + n - 1)
    self.pos = self.pos + #s
    return s
  end
  function t:put_partial_data(s)
    self.written = self.written + #s
    return #s
  end
  return t
end

-- For recording: the harness's in-memory bridge (dir 0 = client->server).
function fuzz_bridge(out_dir, in_dir)
  return {
    get_partial_data = function(_, n) return fuzz_bridge_get(in_dir, n) end,
    put_partial_data = function(_, s) return fuzz_bridge_put(out_dir, s) end,
  }
end
