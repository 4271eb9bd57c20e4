-- The examples and the demo run as they are, as separate processes.
local H = require "helpers"

local function lua(args)
  return H.run("timeout 30 " .. H.LUA .. " " .. args)
end

describe("the examples", function()
  setup(function()
    if not H.exists("certs/server.key") then assert(H.run(H.LUA .. " certs/generate.lua")) end
  end)

  it("demo.lua shows the exchange, version, cipher and certificates", function()
    local ok, out = lua("examples/demo.lua")
    assert.is_true(ok, out)
    assert.matches('server: received "Hello, secure world!\\n"', out, 1, true)
    assert.matches('client: received "Hello, client! You said: Hello, secure world!\\n"', out, 1, true)
    assert.matches("client: version TLSv1%.[23], cipher TLS_[%w_]+, ALPN demo/1", out)
    assert.matches("server certificate: CN=localhost,O=tlspeer, issued by CN=tlspeer dev CA", out, 1, true)
    assert.matches("server: client certificate: CN=tlspeer client,O=tlspeer", out, 1, true)
    assert.matches("demo: done", out)
  end)

  it("server.lua and client.lua talk as the seed's GDScript does", function()
    local out = os.tmpname()
    local srv = assert(io.popen("timeout 20 " .. H.LUA .. " examples/server.lua 0 --once > " .. out .. " 2>&1; echo $?"))
    local port
    for _ = 1, 100 do
      port = H.read(out):match("listening on port (%d+)")
      if port then break end
      os.execute("sleep 0.05")
    end
    assert.truthy(port, "the server did not start")
    local ok, cout = lua("examples/client.lua localhost " .. port)
    assert.is_true(ok, cout)
    assert.matches("Connected to server via TLS", cout, 1, true)
    assert.matches("Server says: Hello, client!", cout, 1, true)
    assert.equal("0", srv:read("*l"))
    srv:close()
    local sout = H.read(out)
    os.remove(out)
    assert.matches("TLS connection established", sout, 1, true)
    assert.matches("Client says: Hello, secure world!", sout, 1, true)
  end)

  it("client.lua reports a failed handshake", function()
    local ok, out = lua("examples/client.lua localhost 1")
    assert.is_true(ok, out)
    assert.matches("TLS handshake failed: .*refused", out)
  end)

  it("mutual_tls.lua admits the client with a certificate and refuses the one without", function()
    local ok, out = lua("examples/mutual_tls.lua")
    assert.is_true(ok, out)
    assert.matches("client: welcome, CN=tlspeer client,O=tlspeer", out, 1, true)
    assert.matches("server: refused: .*no certificate", out)
  end)

  it("self_signed.lua trusts exactly the certificate it made", function()
    local dir = H.tmpdir()
    local ok, out = lua("examples/self_signed.lua " .. dir)
    assert.is_true(ok, out)
    assert.matches("client: echo: Hello, secure world!", out, 1, true)
    local a = out:match("the server showed (%x+)")
    local b = out:match("we trusted%s+(%x+)")
    assert.equal(a, b)
    assert.equal("600", H.mode(dir .. "/self.key"))
    H.cleanup()
  end)
end)
