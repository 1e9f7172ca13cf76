"""scripts/stack_file.py: the merged compose model made into what `docker stack deploy` reads."""

from scripts.stack_file import STACK_FILE_VERSION, stack_config


def test_compose_only_keys_go_and_numbers_take_the_stack_loaders_types():
    merged = {
        "name": "ml-serving-patterns",
        "services": {
            "proxy": {
                "build": {"context": "."},
                "depends_on": {"service_setosa": {"condition": "service_healthy"}},
                "restart": "unless-stopped",
                "entrypoint": None,
                "image": "ml-serving-patterns/proxy:latest",
                "ports": [{"mode": "host", "target": 9100, "published": "9100"}],
                "deploy": {"resources": {"limits": {"cpus": 1.0, "memory": "536870912"}}},
            }
        },
        "networks": {"default": {"name": "ml-serving-patterns_default"}},
        "volumes": {"mysql-data": {"name": "ml-serving-patterns_mysql-data"}},
    }
    stack = stack_config(merged)
    assert stack["version"] == STACK_FILE_VERSION
    assert "name" not in stack
    proxy = stack["services"]["proxy"]
    assert set(proxy) == {"image", "ports", "deploy"}
    assert proxy["ports"] == [{"mode": "host", "target": 9100, "published": 9100}]
    assert proxy["deploy"]["resources"]["limits"]["cpus"] == "1.0"
    # The stack names its network and volumes after itself.
    assert stack["networks"] == {"default": {}}
    assert stack["volumes"] == {"mysql-data": {}}
