"""Fixed coding-session texts for timing session summaries (`memctl bench kv`), in the form
the Claude Code capture hands the summariser: one "User:" or "Assistant:" line per turn."""

from __future__ import annotations

SESSIONS = (
    "User: The nightly export job crashes with a KeyError on 'currency' since yesterday.\n"
    "Assistant: The new invoices from the Stripe import have no currency field. I made "
    "export/invoices.py default to the account's currency and added a test with a "
    "currency-less invoice.\n"
    "User: Good. Can you also log a warning when the default is used?\n"
    "Assistant: Done: export/invoices.py now logs 'invoice without currency' with the invoice "
    "id, and the nightly export passes on yesterday's data.",

    "User: Login on Safari shows a blank page.\n"
    "Assistant: The console shows a SyntaxError: the regex in web/src/auth/validate.ts uses "
    "a lookbehind, which this Safari version does not support.\n"
    "User: Let's avoid lookbehind everywhere then.\n"
    "Assistant: I replaced it with a split on '@' and added an eslint rule that rejects "
    "lookbehind in regexes. Login works on Safari 15 again.",

    "User: The test suite takes 14 minutes on CI, it used to be 5.\n"
    "Assistant: Most of the time is in tests/test_search.py: every test rebuilds the "
    "Elasticsearch index. I made the index a session-scoped fixture.\n"
    "User: Does that keep tests independent?\n"
    "Assistant: Each test now works in its own alias and deletes it afterwards. CI runs in 6 "
    "minutes, and we agreed to keep fixtures session-scoped for expensive services.",

    "User: We need to pick a queue for the email sender: RabbitMQ or Redis streams?\n"
    "Assistant: Redis is already deployed for caching, and the volume is about 2,000 emails "
    "a day, so Redis streams avoid running another service.\n"
    "User: Agreed, go with Redis streams.\n"
    "Assistant: I added mailer/queue.py with a consumer group 'mailer' and a retry after 60 "
    "seconds, and documented the decision in docs/adr/007-email-queue.md.",

    "User: Memory usage of the image worker grows until it is killed.\n"
    "Assistant: Pillow images opened in worker/thumbs.py were never closed, so every "
    "thumbnail kept its decoded pixels.\n"
    "User: Fix it and make sure it stays fixed.\n"
    "Assistant: Images are now opened in a with block, and a new test processes 500 "
    "thumbnails and checks that memory stays under 200 MB. The worker has run for an hour "
    "without growing.",
)
