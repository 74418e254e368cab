"""`insights`: the command-line client of the Insights service.

An HTTP client only (httpx, click, rich): it imports nothing of the service's own packages and no Django, so it
installs and runs on any machine that can reach the API.
"""

__version__ = "0.1.0"
