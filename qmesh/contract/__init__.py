"""The contract between the services: ids, envelopes, events, subjects, outcomes, errors."""
