"""The AWS edge: small interfaces over boto3, each with a stateful fake in the tests.

Nothing here decides anything about pods; it turns ORCA's requests into AWS API
calls, paces them below the account's shared limits, and maps AWS error codes
to the kinds in :mod:`orca.aws.errors`.
"""
