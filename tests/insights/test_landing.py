"""`/`: a page that leads to the API docs, the operator's console and the health probe."""

from __future__ import annotations


def test_the_root_links_docs_admin_and_health(client):
    response = client.get("/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    for href in ("/_rest/v4/docs", "/admin/", "/healthz"):
        assert f'href="{href}"' in page, href


def test_every_link_on_the_root_page_answers(client):
    assert client.get("/_rest/v4/docs").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/").status_code == 302  # to the login page
