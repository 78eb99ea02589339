# The sent list's delivery filter and the health page's event rates (issue 12, item 5).
# Numbered 0008 though it follows 0006: 0007_webhooks_out, made at the same time, follows it.

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('mailer', '0006_delivery_events_and_suppressions'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name='email',
            index=models.Index(
                fields=['account', 'delivery', '-created_at', '-id'],
                name='email_account_delivery_newest',
            ),
        ),
        migrations.AddIndex(
            model_name='deliveryevent',
            index=models.Index(fields=['provider', 'occurred_at'], name='event_provider_occurred'),
        ),
    ]
