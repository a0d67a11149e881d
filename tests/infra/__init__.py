"""Tests of the Pulumi program in ``infra/``, run under Pulumi's mocks."""
