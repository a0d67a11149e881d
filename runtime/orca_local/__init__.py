"""Local stand-ins for AWS, Kubernetes and EC2 instances, used by the demo and the tests."""
