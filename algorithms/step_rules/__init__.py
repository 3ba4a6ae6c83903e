"""Built-in step-size rules, one file each (see asgdbench.plugins.step_rules).

Every module here registers its rule on import; the step-rule registry imports
them all. The strategy registry skips this subpackage.
"""
