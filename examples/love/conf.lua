-- LÖVE 11 configuration of the tlspeer example game.
function love.conf(t)
  t.identity = "tlspeer-example"
  t.version = "11.4"
  t.window.title = "tlspeer in LÖVE: HTTPS, a TLS echo and a WebSocket from love.update"
  t.window.width, t.window.height = 720, 300
  t.modules.audio, t.modules.sound, t.modules.joystick = false, false, false
  t.modules.physics, t.modules.video = false, false
  -- Without a display (SDL_VIDEODRIVER=dummy has no OpenGL): no window.
  if os.getenv("TLSPEER_LOVE_NOWINDOW") then
    t.window = false
    t.modules.window, t.modules.graphics = false, false
  end
end
