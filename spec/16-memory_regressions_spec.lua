-- Regressions for memory errors found by `make asan` / `make valgrind`
-- (AddressSanitizer, UBSan and memcheck over the whole suite).  Each case
-- runs in a fresh interpreter (H.LUA), so a crash fails the spec instead of
-- killing the runner; under `make asan` that child carries the sanitizer too.
local H = require "helpers"

describe("memory regressions", function()

  -- tls.c: connect_to_stream read the common-name override from the user
  -- value of its fourth argument before checking that it was a TLSOptions.
  -- lua_getiuservalue on a number or string reads garbage: a SEGV under
  -- ASan (found by the misuse sweep), a crash or a wrong error without.
  it("connect_to_stream with a fourth argument that is not a TLSOptions raises instead of reading garbage",
     function()
    local ok, out = H.lua([[
      local tls = require "tlspeer"
      local seen = 0
      for _, bad in ipairs { 42, 4.5, "options", true, {}, print,
                             tls.CryptoKey.new(), tls.X509Certificate.new(),
                             tls.HashingContext.new() } do
        local peer = tls.StreamPeerTLS.new()
        local stream = { get_partial_data = function() return "" end,
                         put_partial_data = function(_, s) return #s end }
        local ok, err = pcall(peer.connect_to_stream, peer, stream, "localhost", bad)
        assert(not ok, "accepted " .. tostring(bad))
        assert(tostring(err):find("TLSOptions expected", 1, true), err)
        seen = seen + 1
      end
      io.write("raised ", seen, "\n")
    ]])
    assert.is_true(ok, out)
    assert.are.equal("raised 9\n", out)
  end)

end)
