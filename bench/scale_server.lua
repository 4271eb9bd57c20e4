-- bench/scale_server.lua: the tlspeer side of bench/scale.lua: a tls.listen
-- echo server in one process, stepped by srv:run().
--
--   lua5.4 bench/scale_server.lua CERT KEY
--
-- Prints "PORT p".  Echoes what each connection sends.  A message that
-- starts with "\0CTL " is a command from the bench (answered on the same
-- connection, once run() has returned: within a second):
--   gc              full garbage collection, "ok LUA_HEAP_KIB"
--   count           the number of live connections
--   pollcost K      K calls of srv:poll() and of tls.poll() with nothing
--                   ready, in batches of 1,000: "SRV_MIN SRV_MED TLS_MIN
--                   TLS_MED", ns per call (fastest and median batch)
local tls = require "tlspeer"
local core = require "tlspeer.core"
local now = core._now

local srv = assert(tls.listen { port = 0, bind = "127.0.0.1", certificate = arg[1], key = arg[2] })
local pending
srv:on("data_received", function(conn, data)
  if data:sub(1, 5) == "\0CTL " then
    pending = { conn = conn, cmd = data:sub(6):match("^(.-)%s*$") }
    return
  end
  conn:send(data)
end)
srv:on("error", function(msg) io.stderr:write(msg, "\n") end)
io.write("PORT ", srv:get_local_port(), "\n")
io.flush()

-- ns per call of f: the fastest and the median batch of 1,000.
local function cost(f, k)
  local batches = {}
  for _ = 1, math.max(1, k // 1000) do
    local t0 = now()
    for _ = 1, 1000 do f() end
    batches[#batches + 1] = (now() - t0) / 1000 * 1e9
  end
  table.sort(batches)
  return batches[1], batches[(#batches + 1) // 2]
end

while true do
  srv:run(1.0)
  if pending then
    local p = pending
    pending = nil
    local cmd, a = p.cmd:match("^(%S+)%s*(.*)$")
    local reply = "unknown command"
    if cmd == "gc" then
      collectgarbage("collect")
      collectgarbage("collect")
      reply = ("ok %.1f"):format(collectgarbage("count"))
    elseif cmd == "count" then
      reply = tostring(#srv:get_connections())
    elseif cmd == "pollcost" then
      local k = tonumber(a) or 10000
      local s1, s2 = cost(function() srv:poll() end, k)
      local t1, t2 = cost(tls.poll, k)
      reply = ("%.1f %.1f %.1f %.1f"):format(s1, s2, t1, t2)
    end
    p.conn:send(reply .. "\n")
  end
end
