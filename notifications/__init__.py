"""What the bot sends on its own: scheduled messages, notices to members and staff, broadcasts.

Between the chat adapter (``handlers``) and the program (``loyalty``): a job body selects what is due through
``loyalty``, claims it, renders it in the reader's language and sends it (``delivery``)."""
