from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0002_key_scope_and_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="tz",
            field=models.CharField(
                blank=True, default="", help_text="IANA time zone", max_length=64
            ),
        ),
    ]
