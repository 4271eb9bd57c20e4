-- bench/cqueues_server.lua: the same echo server as bench/scale_server.lua,
-- on cqueues + luaossl (Debian's lua-cqueues, lua-luaossl): the comparison
-- of bench/scale.lua.  One coroutine per connection, one controller.
--
--   lua5.4 bench/cqueues_server.lua CERT KEY
--
-- Prints "PORT p"; the same "\0CTL " commands (pollcost times cq:step(0)).
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local context = require "openssl.ssl.context"
local pkey = require "openssl.pkey"
local x509 = require "openssl.x509"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local ctx = context.new("TLS", true)
assert(ctx:setCertificate(x509.new(read(arg[1]))))
assert(ctx:setPrivateKey(pkey.new(read(arg[2]))))

local srv = assert(socket.listen { host = "127.0.0.1", port = 0 })
assert(srv:listen())
local _, _, port = srv:localname()
io.write("PORT ", port, "\n")
io.flush()

local cq = cqueues.new()
local pending
local live = 0

cq:wrap(function()
  for con in srv:clients() do
    cq:wrap(function()
      con:setmode("bn", "bn")
      local ok = con:starttls(ctx)
      if not ok then
        con:close()
        return
      end
      live = live + 1
      while true do
        local data = con:read(-16384)
        if not data then break end
        if data:sub(1, 5) == "\0CTL " then
          pending = { con = con, cmd = data:sub(6):match("^(.-)%s*$") }
        else
          con:write(data)
          con:flush()
        end
      end
      live = live - 1
      con:close()
    end)
  end
end)

local function now() return cqueues.monotime() end

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
  local ok, err = cq:step(1.0)
  if not ok then io.stderr:write(tostring(err), "\n") end
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
      reply = tostring(live)
    elseif cmd == "pollcost" then
      local k = tonumber(a) or 10000
      local s1, s2 = cost(function() cq:step(0) end, k)
      reply = ("%.1f %.1f - -"):format(s1, s2)
    end
    -- Written from a coroutine of the controller, like every other write.
    cq:wrap(function()
      p.con:write(reply .. "\n")
      p.con:flush()
    end)
  end
end
