"""The producer service: generation requests -> StreamManager -> timed chunks in Redis Streams.

``fakeai-streams producer`` runs :func:`fakeai.services.producer.service.main`.
"""
