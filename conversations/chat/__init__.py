"""Chat: websocket commands, admission, the generation of replies, and the chat pages.

Where an action is: every action that starts a model call is a `check_x` / `do_x` pair in admission.py (send,
regenerate, edit, title); what the page does to a conversation (rename, delete, switch branch, delete a message,
presets) is a pair in conversations.py; reads shared by pages and services are in selectors.py. The edges
(consumers.py, views.py, conversation_views.py) run those and map their domain errors (conversations/errors.py).
"""
