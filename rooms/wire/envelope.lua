-- The envelope of rooms/wire (wire.go): "<exclude>|<position>|<frame>".
-- Prepended by Go to every script that publishes to a room channel.
local function envelope(exclude, pos, frame)
  return exclude .. '|' .. pos .. '|' .. frame
end

local function stored_pos(epoch, seq, state_due)
  local p = epoch .. ':' .. string.format('%d', seq)
  if state_due then
    p = p .. ':r'
  end
  return p
end

local function doc_pos(epoch, seq)
  return '~' .. epoch .. ':' .. string.format('%d', seq)
end
