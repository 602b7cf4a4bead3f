"""systemd: unit rendering and installing, and the sd_notify protocol."""
