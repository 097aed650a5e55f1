"""The people who log in across the suite, and the units of time their tokens live in."""

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@partner.example.org"
HOUR, DAY = 3600, 86_400
