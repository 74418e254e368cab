import psycopg
import redis as redis_client


def test_postgres_fixture_serves_queries(postgres):
    url = postgres.create_database("servers_smoke")
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1 + 1").fetchone() == (2,)


def test_redis_fixture_serves_commands(redis):
    client = redis_client.Redis.from_url(redis.url)
    client.set("k", "v")
    assert client.get("k") == b"v"
