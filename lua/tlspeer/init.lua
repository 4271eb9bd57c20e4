-- tlspeer: TLS and crypto for Lua, on mbedtls, with Godot 4's classes.
local core = require "tlspeer.core"

local M = {
  _VERSION = "tlspeer scm",
  mbedtls_version = core.mbedtls_version,
}

for _, name in ipairs { "Crypto", "CryptoKey", "X509Certificate",
                        "HashingContext", "HMACContext", "AESContext",
                        "StreamPeerTCP", "TCPServer", "TLSOptions",
                        "StreamPeerTLS" } do
  M[name] = core[name]
end

for _, name in ipairs { "set_certificate_bundle_override",
                        "set_certificate_bundle_override_pem",
                        "get_certificate_bundle_override",
                        "get_system_ca_certificates",
                        "get_certificate_bundle_source", "preload_certificate_bundle",
                        "set_worker_threads", "get_worker_threads" } do
  M[name] = core[name]
end

-- The Mozilla bundle shipped with tlspeer, the last resort of the default
-- CA bundle: next to this file once installed, or certs/ in a checkout.
-- Only when this file was loaded from disk: an embedded copy has no place
-- of its own, and the current directory is never trusted (the C side makes
-- the paths absolute).
do
  local source = debug.getinfo(1, "S").source
  local dir = source:match("^@(.*)/[^/]*$") or (source:match("^@[^/]*$") and ".")
  if dir then
    core._set_shipped_bundles {
      dir .. "/ca-certificates.crt",
      dir .. "/../../certs/ca-certificates.crt",
    }
  end
end

M.pipe = require "tlspeer.pipe"

M.HTTPClient = require "tlspeer.http"
M.request = require "tlspeer.request"
M.HTTPRequest = require "tlspeer.httprequest"

M.WebSocketPeer = require "tlspeer.websocket"

local helpers = require "tlspeer.helpers"
M.listen = helpers.listen
M.connect = helpers.connect

local ws_helpers = require "tlspeer.websocket_helpers"
M.ws_listen = ws_helpers.ws_listen
M.ws_connect = ws_helpers.ws_connect

-- One call per frame: a step of every live helper object (HTTPRequests too).
local loop = require "tlspeer.loop"
M.poll = function(budget) return loop.poll(budget) end
M.set_poll_budget = loop.set_budget
M.get_poll_budget = loop.get_budget
-- tls.run(timeout): steps every helper object, sleeping in the event loop
-- between events, for `timeout` seconds (nil: for good).
M.run = function(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then
    error("bad argument #1 to 'run' (number of seconds expected)", 2)
  end
  loop.run(nil, function() return false end, timeout)
  return true
end

-- A clock and a sleep for scripts (a game has its own frame clock).
-- tls.now(): seconds on a monotonic clock (only differences mean anything).
M.now = core._now
-- tls.sleep(seconds): blocks the calling thread; nothing is polled meanwhile.
M.sleep = function(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
    error(("bad argument #1 to 'sleep' (seconds >= 0 expected, got %s)")
      :format(type(seconds) == "number" and tostring(seconds) or type(seconds)), 2)
  end
  core._sleep(seconds)
end

-- tostring(tls.SomeClass) lists what it has; done last, so that it covers
-- every class table above.
return require("tlspeer.classes").decorate(M)
