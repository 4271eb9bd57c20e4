-- bench/scale_clients.lua: the far ends of bench/scale.lua, with tlspeer's
-- blocking calls (the same clients for both servers).
--
--   lua5.4 bench/scale_clients.lua idle HOST PORT CA M
--       M connections, one after the other (handshake, then a 1-byte echo,
--       so the server has finished and a TLS 1.3 ticket is read); all but
--       the first resume the first one's session (one TLSOptions).  Prints
--       "READY M REUSED r", then keeps them idle until killed.
--   lua5.4 bench/scale_clients.lua echo HOST PORT[,PORT...] CA K ROUNDS SIZE [BLOCK [GOFILE]]
--       K connections to each server; ROUNDS times, each connection sends
--       SIZE bytes and waits for them back, in turn; the servers take turns
--       by blocks of BLOCK rounds (same machine load for each).  Prints
--       RESULT sI_rtt_p50_us, sI_rtt_p99_us, sI_rtt_mean_us, sI_rtt_max_us,
--       sI_echoes for server I.  With GOFILE, prints "CONNECTED" once the
--       connections are up and starts when that file exists.
--   lua5.4 bench/scale_clients.lua cmd HOST PORT CA COMMAND...
--       sends "\0CTL COMMAND" and prints the answer line.
local tls = require "tlspeer"
local core = require "tlspeer.core"
local now = core._now

local mode, host, port, ca_path = arg[1], arg[2], tonumber(arg[3]:match("^%d+")), arg[4]

local ca = tls.X509Certificate.new()
assert(ca:load(ca_path))
local opts = assert(tls.TLSOptions.client(ca))

local function open()
  local tcp = tls.StreamPeerTCP.new()
  assert(tcp:connect_to_host(host, port))
  tcp:set_no_delay(true)
  local peer = tls.StreamPeerTLS.new()
  assert(peer:connect_to_stream(tcp, "localhost", opts))
  return peer
end

local function check(v, msg, code)
  if v == nil then error(("%s (%s)"):format(tostring(msg), tostring(code)), 2) end
  return v
end

if mode == "idle" then
  local m = tonumber(arg[5])
  local keep, reused = {}, 0
  for i = 1, m do
    local t0 = now()
    local peer = open()
    local ok, msg, code = peer:put_data("x")
    if not ok then
      local tcp = peer:get_stream()
      error(("connection %d of %d, after %.1f s: %s (%s); TLS status %s, TCP status %s %s"):format(
        i, m, now() - t0, tostring(msg), tostring(code), tostring(peer:get_status()),
        tostring(tcp and tcp:get_status()), tostring(tcp and tcp:get_local_port())))
    end
    check(peer:get_data(1))
    if peer:is_session_reused() then reused = reused + 1 end
    keep[i] = peer
  end
  io.write(("READY %d REUSED %d\n"):format(m, reused))
  io.flush()
  while true do core._wait({}, {}, 3600) end
elseif mode == "echo" then
  -- PORT may be a comma-separated list: servers take turns, a block of
  -- BLOCK rounds each, so every server sees the same machine load.
  local k, rounds, size, block = tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7]),
    tonumber(arg[8] or 50)
  local ports = {}
  for p in arg[3]:gmatch("%d+") do ports[#ports + 1] = tonumber(p) end
  local msg = ("e"):rep(size)
  local sets, rtts = {}, {}
  for s, p in ipairs(ports) do
    port = p
    sets[s], rtts[s] = {}, {}
    for i = 1, k do
      local peer = open()
      -- One warm-up round trip each.
      check(peer:put_data(msg))
      check(peer:get_data(size))
      sets[s][i] = peer
    end
  end
  -- Connected: the bench may start measuring (GOFILE: wait until it exists).
  local gofile = arg[9]
  if gofile then
    io.write("CONNECTED\n")
    io.flush()
    while not io.open(gofile) do core._wait({}, {}, 0.005) end
  end
  local done = 0
  while done < rounds do
    local n = math.min(block, rounds - done)
    for s = 1, #ports do
      local peers, rtt = sets[s], rtts[s]
      for _ = 1, n do
        for i = 1, k do
          local t0 = now()
          check(peers[i]:put_data(msg))
          local got = check(peers[i]:get_data(size))
          rtt[#rtt + 1] = now() - t0
          assert(got == msg, "echo mismatch")
        end
      end
    end
    done = done + n
  end
  for s, rtt in ipairs(rtts) do
    table.sort(rtt)
    local sum = 0
    for _, v in ipairs(rtt) do sum = sum + v end
    local function pct(p) return rtt[math.max(1, math.ceil(p * #rtt))] end
    io.write(("RESULT s%d_rtt_p50_us %.1f\nRESULT s%d_rtt_p99_us %.1f\nRESULT s%d_rtt_mean_us %.1f\n"
      .. "RESULT s%d_rtt_max_us %.1f\nRESULT s%d_echoes %d\n")
      :format(s, pct(0.5) * 1e6, s, pct(0.99) * 1e6, s, sum / #rtt * 1e6, s, rtt[#rtt] * 1e6, s, #rtt))
    for i = 1, k do sets[s][i]:disconnect_from_stream() end
  end
elseif mode == "cmd" then
  local peer = open()
  local cmd = table.concat({ table.unpack(arg, 5) }, " ")
  check(peer:put_data("\0CTL " .. cmd .. "\n"))
  local line = {}
  while true do
    local c = check(peer:get_data(1))
    if c == "\n" then break end
    line[#line + 1] = c
  end
  io.write(table.concat(line), "\n")
  peer:disconnect_from_stream()
else
  error("usage: scale_clients.lua idle|echo|cmd HOST PORT CA ...")
end
