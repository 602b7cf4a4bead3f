from django.db import migrations


def _upgrade(apps, schema_editor):
    from djctl.contrib.django.schema import upgrade

    upgrade(schema_editor.connection.alias)


class Migration(migrations.Migration):
    # djctl's migrations run on djctl's own connection, each in its own transaction
    # (MySQL commits DDL anyway); Django's must not hold one open around them.
    atomic = False
    initial = True
    dependencies = ()
    operations = (migrations.RunPython(_upgrade, migrations.RunPython.noop),)
