"""gunicorn's settings for every web process of Insights (gunicorn reads ./gunicorn.conf.py from its working
directory: the checkout, or /app in the image). The command line adds the bind address and the process count."""

# gunicorn 25+ opens a control socket under $HOME; in the image $HOME is the var volume that every web
# replica shares, and one instance would remove another's socket. Nothing here uses it.
control_socket_disable = True
