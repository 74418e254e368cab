"""The operators' console: query list, detail, live view and actions."""

from __future__ import annotations

from queries.models import IdempotencyKey, QueryRequest, QueryStatus


def _query(customer, **fields):
    return QueryRequest.objects.create(
        customer=customer,
        body='{"data": {}}',
        fingerprint="f" * 64,
        plan='{"version": 0, "sql": "SELECT 1", "params": [["s", "acme"]]}',
        **fields,
    )


def test_list_filters_and_search(admin_client, customer_factory):
    acme, globex = customer_factory("acme"), customer_factory("globex")
    done = _query(acme, status=QueryStatus.COMPLETED)
    pending = _query(globex)
    page = admin_client.get("/admin/queries/queryrequest/?status__exact=Pending").content.decode()
    assert pending.guid in page and done.guid not in page
    page = admin_client.get(f"/admin/queries/queryrequest/?q={done.guid}").content.decode()
    assert done.guid in page and pending.guid not in page


def test_detail_shows_body_sql_and_timings(admin_client, customer_factory):
    query = _query(customer_factory("acme"), messages=["boom"])
    page = admin_client.get(f"/admin/queries/queryrequest/{query.pk}/change/").content.decode()
    for text in ("SELECT 1", "$1 = acme (string)", "&quot;data&quot;", "boom", query.fingerprint, "Run time"):
        assert text in page, text


def test_detail_shows_the_summary(admin_client, customer_factory):
    query = _query(
        customer_factory("acme"), status=QueryStatus.COMPLETED, summary='{"rows":3,"approximate":false}'
    )
    page = admin_client.get(f"/admin/queries/queryrequest/{query.pk}/change/").content.decode()
    assert "&quot;rows&quot;: 3" in page and "Summary" in page


def test_live_view_groups_pending_queries_by_customer(admin_client, customer_factory):
    acme = customer_factory("acme", max_concurrent_queries=2)
    running = _query(acme, attempts=1)
    QueryRequest.objects.filter(pk=running.pk).update(started_at=running.submitted_at)
    queued = _query(acme)
    finished = _query(customer_factory("globex"), status=QueryStatus.COMPLETED)
    page = admin_client.get("/admin/queries/queryrequest/live/").content.decode()
    assert "acme — 2 of 2 slots in use" in page
    assert running.guid in page and queued.guid in page and finished.guid not in page
    assert "running" in page and "queued" in page


def test_cancel_action_ends_an_unclaimed_query(admin_client, customer_factory):
    query = _query(customer_factory("acme"))
    admin_client.post(
        "/admin/queries/queryrequest/", {"action": "cancel_queries", "_selected_action": [query.pk]}
    )
    query.refresh_from_db()
    assert query.status == QueryStatus.CANCELED


def test_the_live_view_needs_staff(client):
    assert client.get("/admin/queries/queryrequest/live/").status_code == 302


def test_detail_shows_the_export_and_serves_its_files(
    admin_client, customer_factory, completed_query_factory
):
    query = completed_query_factory(customer_factory("acme"))
    page = admin_client.get(f"/admin/queries/queryrequest/{query.pk}/change/").content.decode()
    assert "&quot;download_link&quot;" in page and "&quot;downloadable&quot;: true" in page
    link = f"/admin/queries/queryrequest/{query.pk}/file/0/"
    assert link in page
    response = admin_client.get(link)
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"\x1f\x8b")  # the gzipped part itself
    assert admin_client.get(f"/admin/queries/queryrequest/{query.pk}/file/7/").status_code == 404


def test_the_list_shows_description_and_format(admin_client, customer_factory):
    _query(customer_factory("acme"), description="March calls", output={"format": "parquet"})
    page = admin_client.get("/admin/queries/queryrequest/").content.decode()
    assert "March calls" in page and "parquet" in page


def test_results_are_deleted_with_their_files_never_as_bare_rows(
    admin_client, customer_factory, completed_query_factory, local_exports
):
    query = completed_query_factory(customer_factory("acme"))
    files = [local_exports / entry["path"] for entry in query.files] + [local_exports / query.manifest_path]
    assert all(path.exists() for path in files)
    listing = admin_client.get("/admin/queries/queryrequest/").content.decode()
    assert "delete_selected" not in listing and "delete_results" in listing
    assert admin_client.get(f"/admin/queries/queryrequest/{query.pk}/delete/").status_code == 403
    response = admin_client.post(
        "/admin/queries/queryrequest/",
        {"action": "delete_results", "_selected_action": [query.pk]},
        follow=True,
    )
    query.refresh_from_db()
    assert query.status == QueryStatus.DELETED
    assert not any(path.exists() for path in files)
    assert f"Query {query.guid}: Deleted." in response.content.decode()


def _reuse_of(original, **fields):
    return _query(original.customer, reused_from=original, **fields)


def test_a_reuse_links_its_original_and_the_original_its_reuses(admin_client, customer_factory):
    original = _query(customer_factory("acme"), status=QueryStatus.COMPLETED)
    reuse = _reuse_of(original, status=QueryStatus.COMPLETED)
    page = admin_client.get(f"/admin/queries/queryrequest/{reuse.pk}/change/").content.decode()
    assert (
        f'<a href="/admin/queries/queryrequest/{original.pk}/change/">{original.guid}</a> (Completed)' in page
    )
    assert "Reused from" in page
    page = admin_client.get(f"/admin/queries/queryrequest/{original.pk}/change/").content.decode()
    assert f'<a href="/admin/queries/queryrequest/{reuse.pk}/change/">{reuse.guid}</a> (Completed)' in page


def test_the_idempotency_key_is_shown(admin_client, customer_factory):
    acme = customer_factory("acme")
    keyed, plain = _query(acme), _query(acme)
    IdempotencyKey.objects.create(
        customer=acme, key="retry-7f3a<b>", request_fingerprint="r" * 64, query=keyed
    )
    page = admin_client.get(f"/admin/queries/queryrequest/{keyed.pk}/change/").content.decode()
    assert "Idempotency-Key" in page and "<code>retry-7f3a&lt;b&gt;</code>" in page  # escaped
    page = admin_client.get(f"/admin/queries/queryrequest/{plain.pk}/change/").content.decode()
    assert "retry-7f3a" not in page


def test_the_list_tells_reuses_apart(admin_client, customer_factory):
    original = _query(customer_factory("acme"), status=QueryStatus.COMPLETED)
    reuse = _reuse_of(original, status=QueryStatus.COMPLETED)
    reused = admin_client.get("/admin/queries/queryrequest/?reuse=yes").content.decode()
    assert reuse.guid in reused and original.guid not in reused
    ran = admin_client.get("/admin/queries/queryrequest/?reuse=no").content.decode()
    assert original.guid in ran and reuse.guid not in ran
    everything = admin_client.get("/admin/queries/queryrequest/").content.decode()
    assert (
        "Reused another&#x27;s result" in everything
        and '<td class="field-duration">reused</td>' in everything
    )


def test_the_live_view_counts_no_slot_for_a_joined_reuse(admin_client, customer_factory):
    running = _query(customer_factory("acme", max_concurrent_queries=2), attempts=1)
    QueryRequest.objects.filter(pk=running.pk).update(started_at=running.submitted_at)
    follower = _reuse_of(running)
    page = admin_client.get("/admin/queries/queryrequest/live/").content.decode()
    assert "acme — 1 of 2 slots in use" in page
    assert (
        follower.guid in page
        and f'following <a href="/admin/queries/queryrequest/{running.pk}/change/">' in page
    )


def test_actions_are_offered_by_the_operators_permissions(client, django_user_model, customer_factory):
    """A view-only operator sees queries and changes nothing: cancel, re-run and re-deliver need the change
    permission, deleting results the delete permission (the pages are read-only for everyone)."""
    from django.contrib.auth.models import Permission

    _query(customer_factory("acme"))
    operator = django_user_model.objects.create_user("viewer", password="pw-123456789", is_staff=True)

    def offered(*codenames: str) -> set[str]:
        operator.user_permissions.set([Permission.objects.get(codename=name) for name in codenames])
        client.force_login(django_user_model.objects.get(pk=operator.pk))  # a fresh permission cache
        page = client.get("/admin/queries/queryrequest/").content.decode()
        names = ("cancel_queries", "rerun_queries", "redeliver_queries", "delete_results")
        return {name for name in names if f'value="{name}"' in page}

    assert offered("view_queryrequest") == set()
    assert offered("view_queryrequest", "change_queryrequest") == {
        "cancel_queries",
        "rerun_queries",
        "redeliver_queries",
    }
    assert offered("view_queryrequest", "delete_queryrequest") == {"delete_results"}
