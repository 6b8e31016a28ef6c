"""The server's routes, one module each; ``ROUTERS`` is what the app mounts, in this order."""

from vlmzoo.serve.routes import chat, embeddings, images, models

ROUTERS = (models.router, chat.router, embeddings.router, images.router)
