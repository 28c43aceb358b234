"""Chat: websocket commands, admission, the generation of replies, and the chat pages."""
