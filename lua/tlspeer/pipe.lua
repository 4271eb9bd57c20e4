-- tls.pipe(): two connected in-memory stream peers, for running TLS over
-- something other than a socket (tests, an engine's own transport).  Each
-- end has get_partial_data(n) / put_partial_data(s), as StreamPeerTLS needs,
-- plus get_available_bytes() and disconnect_from_host().  Everything is
-- non-blocking; data written to one end is read from the other.
local is_integer = require("tlspeer.core")._is_integer

local Pipe = {}
Pipe.__index = Pipe

function Pipe:__tostring()
  return ("pipe end (%d bytes waiting%s)"):format(self:get_available_bytes(),
    self.closed and ", closed" or "")
end

function Pipe:get_available_bytes()
  return #self.inbox - self.pos + 1
end

function Pipe:get_partial_data(n)
  if not is_integer(n) or n < 0 then
    error("bad argument #1 to 'get_partial_data' (non-negative integer expected)", 2)
  end
  local avail = #self.inbox - self.pos + 1
  if avail == 0 then
    if self.closed or self.peer.closed then
      return nil, "the other end of the pipe is closed", "ERR_FILE_EOF"
    end
    return ""
  end
  local take = math.min(n, avail)
  local s = self.inbox:sub(self.pos, self.pos + take - 1)
  self.pos = self.pos + take
  if self.pos > 65536 then          -- drop what has been read
    self.inbox, self.pos = self.inbox:sub(self.pos), 1
  end
  return s
end

function Pipe:put_partial_data(s)
  if type(s) ~= "string" then
    error("bad argument #1 to 'put_partial_data' (string expected)", 2)
  end
  if self.closed or self.peer.closed then
    return nil, "the other end of the pipe is closed", "ERR_CONNECTION_ERROR"
  end
  local peer = self.peer
  peer.inbox = peer.inbox .. s
  return #s
end

function Pipe:disconnect_from_host()
  self.closed = true
end

Pipe.__close = Pipe.disconnect_from_host
Pipe.__gc = function() end      -- plain Lua strings: nothing to free by hand

return function()
  local a = setmetatable({ inbox = "", pos = 1 }, Pipe)
  local b = setmetatable({ inbox = "", pos = 1 }, Pipe)
  a.peer, b.peer = b, a
  return a, b
end
