"""The virtual-user directory (spec section 9.6): domains, accounts and their delivery rules.

``names`` and ``namespaces`` validate and map names, ``rules`` checks rule texts, ``passwords``
makes and checks verifiers, ``records`` defines the stored documents, ``store`` reads and
writes them in KV ``qmesh_directory``, ``admin`` holds the operations of the admin CLI, and
``domains`` keeps a watched copy of the domain names for routing.
"""
