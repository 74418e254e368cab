"""compiled_sql is in the plan now (0003). Its own migration: PostgreSQL cannot ALTER a table in the
transaction that just updated its rows ("pending trigger events")."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("queries", "0003_compile_once")]

    operations = [migrations.RemoveField(model_name="queryrequest", name="compiled_sql")]
