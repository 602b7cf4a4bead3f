from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = ()
    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("item", models.CharField(max_length=100)),
                ("email", models.EmailField(max_length=254)),
                ("packing_seconds", models.FloatField(default=0)),
                ("receipt", models.TextField(blank=True)),
                ("tallied", models.BooleanField(default=False)),
            ],
        ),
    ]
